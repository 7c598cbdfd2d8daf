#!/bin/sh
# Install the Debian packages the interop tests drive, only where something is missing.
# As root it uses apt-get; otherwise it names the packages to install and carries on
# (the tests then skip with a reason, or fail under CI=true).
set -eu
missing=""
# need PACKAGE CHECK...: PACKAGE is missing unless the command CHECK... succeeds.
need() {
    pkg=$1
    shift
    "$@" >/dev/null 2>&1 || missing="$missing $pkg"
}
# A tool in /usr/sbin is named by its absolute path, since PATH may lack /usr/sbin.
# postfix also brings smtp-source and smtp-sink (the benchmark's tools).
need swaks command -v swaks
need postfix command -v /usr/sbin/postfix
need curl command -v curl
# POP3 clients of the interop tests (tests/interop/test_pop3_clients.py).
need fetchmail command -v fetchmail
need getmail6 command -v getmail
# IMAP client of the interop tests (tests/interop/test_imap_clients.py).
need isync command -v mbsync
# swaks --tls / --tlsc load these Perl modules only when asked to, so check them apart.
need libnet-ssleay-perl perl -MNet::SSLeay -e1
need libio-socket-ssl-perl perl -MIO::Socket::SSL -e1
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    case " $missing " in
    *" postfix "*)
        # Tests start private Postfix instances of their own: the package must not set up
        # (or start) a system MTA, nor ask. With "No configuration" there is no
        # /etc/postfix/main.cf, and without it the init script starts nothing.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        ;;
    esac
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
else
    echo "missing Debian packages:$missing — install them with: sudo apt-get install$missing" >&2
fi
