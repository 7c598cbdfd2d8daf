"""Side-by-side benchmarks of postoffice against Postfix, Dovecot and aiosmtpd (`make bench`)."""
