from setuptools import find_packages, setup

package_name = "enpire_evolve"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["starter/*", "starter/*/*", "notes/*.md", "agents/ideas/*.py"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="enpire maintainers",
    maintainer_email="maintainers@enpire.dev",
    description="E: coding-agent hosts, git worktrees, ledger, MTU accounting, morning report.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["evolve_node = enpire_evolve.evolve_node:main"]},
)
