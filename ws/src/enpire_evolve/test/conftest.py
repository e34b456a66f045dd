from enpire_env.testing import (  # noqa: F401  (pytest fixtures)
    ros_context,
    ros_context_module,
    ros_domain,
    ros_domain_module,
)
