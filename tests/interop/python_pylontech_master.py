#!/usr/bin/env python3
"""Interop peer for pace2pylon's RS485 profile tests: python-pylontech (PyPI python-pylontech, an
implementation independent of ours) as the generic Pylontech master.

Usage: python_pylontech_master.py PORT BAUD

Opens PORT (a serial device such as a pty) and asks what python-pylontech's API asks: the protocol
version and the manufacturer at ADR 0, the system parameters at ADR 2, every module's values
(0x42 FF), pack 1's values, pack 1's management info (0x92) and serial number (0x93), and a scan of
ADR 1..4 for serial numbers. Prints one JSON object with every answer (construct containers as
objects, bytes as text). python-pylontech reads with readline(), so each answer waits out its
2 s timeout: the run takes about half a minute.
"""
import contextlib
import io
import json
import sys

import construct
from pylontech.pylontech import Pylontech


def plain(value):
    if isinstance(value, construct.Container):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, (list, construct.ListContainer)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value


def main():
    port, baud = sys.argv[1], int(sys.argv[2])
    p = Pylontech(serial_port=port, baudrate=baud)
    out = {}
    version = p.get_protocol_version()
    out["protocol_version"] = {"ver": version.ver.hex(), "adr": version.adr.hex(), "cid2": version.cid2.hex()}
    out["manufacturer_info"] = plain(p.get_manufacturer_info())
    out["system_parameters"] = plain(p.get_system_parameters())
    out["values"] = plain(p.get_values())
    out["values_single"] = plain(p.get_values_single(2))
    # get_management_info prints its raw frame; keep stdout for the JSON.
    with contextlib.redirect_stdout(io.StringIO()):
        out["management_info"] = plain(p.get_management_info(2))
    out["serial_number"] = plain(p.get_module_serial_number(2))
    out["scan"] = {str(k): v for k, v in p.scan_for_batteries(1, 5).items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
