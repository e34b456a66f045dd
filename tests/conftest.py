from enpire_env.testing import ros_context, ros_domain  # noqa: F401
