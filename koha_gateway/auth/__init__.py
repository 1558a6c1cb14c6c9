"""Authentication of SIP accounts and patrons: local bcrypt hashes and LDAP."""
