"""The ACS (automated circulation system) side of SIP2: one handler per request message."""
