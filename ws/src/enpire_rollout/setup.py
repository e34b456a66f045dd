from setuptools import find_packages, setup

package_name = "enpire_rollout"

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
    description="R: fleet scheduler, episode execution, recording and MRU accounting.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "rollout_node = enpire_rollout.rollout_node:main",
        ]
    },
)
