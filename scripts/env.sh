# Source this file (bash) to get the enpire environment: the venv, ROS 2, the built workspace.
#   source scripts/env.sh
_enpire_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_enpire_venv="${ENPIRE_VENV:-$_enpire_root/.venv}"
if [[ ! -f "$_enpire_root/ws/install/local_setup.bash" ]]; then
  echo "enpire: not set up yet; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_enpire_venv/bin/activate"
[[ -f "$_enpire_venv/local_setup.sh" ]] && source "$_enpire_venv/local_setup.sh"
# shellcheck disable=SC1091
source "$_enpire_root/ws/install/local_setup.bash"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export PATH="$_enpire_root/ws/install/enpire_bringup/lib/enpire_bringup:$PATH"
unset _enpire_root _enpire_venv
