#!/usr/bin/env bash
# Container entry point: ROS, the enpire workspace and its venv on the environment, then the
# command (default `enpire --help`). Data goes to $ENPIRE_DATA (a volume).
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
cd /opt/enpire
# shellcheck disable=SC1091
source scripts/env.sh
if [[ "$1" == "enpire" && -n "${ENPIRE_DATA:-}" && "$*" != *"--data-dir"* ]]; then
  case "$2" in
    launch|demo) set -- "$@" --data-dir "$ENPIRE_DATA" ;;
  esac
fi
exec "$@"
