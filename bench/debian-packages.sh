#!/bin/sh
# Install the Debian packages `make bench` runs against, only where something is missing:
# postfix (the peer MTA, and smtp-source, the load generator), dovecot-pop3d and dovecot-imapd
# (the POP3 and IMAP peers; dovecot-core, which they pull in, brings dovecot-lda).
# The bench starts private instances with their own configuration in a temporary directory;
# the packages' system instances are neither configured nor used.
set -eu
missing=""
[ -x /usr/sbin/smtp-source ] || missing="$missing postfix"
[ -x /usr/lib/dovecot/pop3 ] || missing="$missing dovecot-pop3d"
[ -x /usr/lib/dovecot/imap ] || missing="$missing dovecot-imapd"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench needs Debian packages:$missing — install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
case " $missing " in
*" postfix "*)
    # No system MTA: with "No configuration" there is no /etc/postfix/main.cf, and without
    # it the init script starts nothing.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    ;;
esac
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
