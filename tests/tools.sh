# tests/tools.sh - installing the build tools, for tests/run.sh and bench/run.sh
# (sourced; POSIX sh). Every step says what it does and, when it cannot, why
# in words, on standard error.
#
#   cua_apt_install WHO PACKAGE...   apt-get the Debian packages (as root, else
#                                    through sudo), waiting up to 120 s for a
#                                    busy apt; 0 when installed
#   cua_pip_meson WHO                meson and ninja from PyPI with pip, into a
#                                    virtual environment in build-tools/venv
#                                    (else pip --user), put first on PATH; 0
#                                    when both run afterwards
# WHO prefixes the messages ("tests/run.sh").

cua_apt_install() {
    cua_who=$1
    shift
    cua_sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$cua_who: $* missing; not root and no sudo, so apt-get cannot install them" >&2
            return 1
        fi
        cua_sudo=sudo
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$cua_who: $* missing, and this system has no apt-get (not Debian or Ubuntu)" >&2
        return 1
    fi
    echo "$cua_who: installing $* with apt-get" >&2
    cua_log=$(mktemp) || return 1
    # DPkg::Lock::Timeout: wait for another apt or dpkg (unattended upgrades) first.
    if $cua_sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -qq \
            >"$cua_log" 2>&1 &&
        $cua_sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
            "$@" >>"$cua_log" 2>&1; then
        rm -f "$cua_log"
        return 0
    fi
    if grep -qiE "could not get lock|unable to acquire|another process" "$cua_log"; then
        echo "$cua_who: apt-get is busy: another apt-get or dpkg still held its lock after 120 s" \
            "($(grep -iE 'lock' "$cua_log" | head -n 1))" >&2
    else
        echo "$cua_who: apt-get could not install $*: $(tail -n 2 "$cua_log" | tr '\n' ' ')" >&2
    fi
    rm -f "$cua_log"
    return 1
}

cua_pip_meson() {
    cua_who=$1
    if command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1; then
        return 0
    fi
    cua_py=$(command -v python3 2>/dev/null) || {
        echo "$cua_who: no python3 either, so no pip to install meson and ninja with" >&2
        return 1
    }
    cua_bin=""
    if "$cua_py" -m venv build-tools/venv >/dev/null 2>&1 &&
        build-tools/venv/bin/python -m pip --version >/dev/null 2>&1; then
        echo "$cua_who: falling back to pip: meson and ninja into build-tools/venv" >&2
        if build-tools/venv/bin/python -m pip install --disable-pip-version-check --retries 1 --timeout 20 -q meson ninja >&2; then
            cua_bin=$(pwd)/build-tools/venv/bin
        fi
    elif "$cua_py" -m pip --version >/dev/null 2>&1; then
        echo "$cua_who: falling back to pip install --user meson ninja" >&2
        if "$cua_py" -m pip install --user --disable-pip-version-check --retries 1 --timeout 20 -q meson ninja >&2; then
            cua_bin=$("$cua_py" -m site --user-base)/bin
        fi
    else
        echo "$cua_who: $cua_py has no pip (nor venv), so meson and ninja cannot come from PyPI" >&2
        return 1
    fi
    if [ -z "$cua_bin" ]; then
        echo "$cua_who: pip could not install meson and ninja (no package registry reachable?)" >&2
        return 1
    fi
    PATH=$cua_bin:$PATH
    export PATH
    hash -r 2>/dev/null || true
    command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1
}
