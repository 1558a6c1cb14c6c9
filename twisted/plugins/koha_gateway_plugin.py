"""twistd plugin: ``twistd -n koha-gateway --sip-config SIPconfig.xml --database URL``."""

from twisted.application.service import ServiceMaker

kohaGateway = ServiceMaker(
    "koha-gateway",
    "koha_gateway.tap",
    "SIP2 server for Koha libraries (SIPconfig.xml listeners, TLS, LDAP)",
    "koha-gateway",
)
