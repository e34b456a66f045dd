"""Launch files, configuration, SO-101 description and the enpire command."""
