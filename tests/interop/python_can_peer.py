#!/usr/bin/env python3
"""Interop peer for pace2pylon's CAN tests: python-can's slcan bus (an implementation independent
of ours) as the inverter, decoding with cantools and the repository's DBC file.

Usage: python_can_peer.py CHANNEL DBC SECONDS HEARTBEAT_SECONDS

Opens python-can's slcan interface on CHANNEL (a serial device such as a pty, or socket://host:port)
at 500 kbit/s, sends the inverter's 0x305 heartbeat (eight zero bytes) every 0.5 s for the first
HEARTBEAT_SECONDS, and prints every frame it receives for SECONDS as one JSON line:

    {"t": 1733112345.123, "id": 849, "dlc": 8, "data": "2C01...", "name": "BMS_Limits",
     "signals": {"ChargeVoltageLimit": 53.2, ...}}

"t" is the wall clock when python-can returned the frame. "name" and "signals" are null for an id
the DBC does not describe. The first line is {"ready": true} once the bus is open.
"""
import json
import sys
import time

import can
import cantools


def main():
    channel, dbc, seconds, heartbeat_for = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    db = cantools.database.load_file(dbc)
    bus = can.Bus(interface="slcan", channel=channel, bitrate=500000, sleep_after_open=0)
    print(json.dumps({"ready": True}), flush=True)
    heartbeat = can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False)
    start = time.monotonic()
    next_beat = start
    try:
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if now >= next_beat and now - start < heartbeat_for:
                bus.send(heartbeat)
                next_beat = now + 0.5
            msg = bus.recv(timeout=0.05)
            if msg is None or msg.is_error_frame:
                continue
            line = {
                "t": time.time(),
                "id": msg.arbitration_id,
                "dlc": msg.dlc,
                "data": msg.data.hex().upper(),
                "name": None,
                "signals": None,
            }
            try:
                m = db.get_message_by_frame_id(msg.arbitration_id)
                line["name"] = m.name
                line["signals"] = m.decode(bytes(msg.data))
            except (KeyError, ValueError, cantools.database.errors.DecodeError) as e:
                line["error"] = str(e)
            print(json.dumps(line), flush=True)
    finally:
        bus.shutdown()


if __name__ == "__main__":
    main()
