from setuptools import find_packages, setup

package_name = "enpire_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="enpire maintainers",
    maintainer_email="maintainers@enpire.dev",
    description="PI: policy interface, recipes, sandboxed loading of agent-written policies.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "train_node = enpire_policy.train_node:main",
        ]
    },
)
