from setuptools import find_packages, setup

package_name = "enpire_env"

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
    description="EN: simulated SO-101 PushT cell, automatic reset, verification, safety.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "env_node = enpire_env.env_node:main",
            "sim_cell_node = enpire_env.sim_cell_node:main",
            "safety_filter_node = enpire_env.safety_filter_node:main",
            "viz_node = enpire_env.viz_node:main",
            "so101_driver_node = enpire_env.so101_driver_node:main",
        ]
    },
)
