#!/usr/bin/env python3
"""Interop peer for pace2pylon's tests: pymodbus (an implementation independent of ours) serving an
Eco-Worthy coulomb counter and a Vevor inverter with RTU framing over TCP.

Usage: pymodbus_peer.py COIL_PORT VEVOR_PORT LOG
       pymodbus_peer.py read-holding PORT ADDRESS COUNT    (pymodbus's client; prints a JSON list)

The counter answers the custom function 0x6F (set the SOC readout) by echoing the request; the peer
appends every 0x6F request to LOG as JSON lines. Register writes are checked by reading them back
with pymodbus's own client (the read-holding form).
"""
import asyncio
import json
import logging
import struct
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer

logging.disable(logging.CRITICAL)

if sys.argv[1] == "read-holding":
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=int(sys.argv[2]), framer=FramerType.RTU)
    client.connect()
    reply = client.read_holding_registers(int(sys.argv[3]), count=int(sys.argv[4]), device_id=1)
    client.close()
    print(json.dumps(reply.registers))
    sys.exit(0)

COIL_PORT, VEVOR_PORT, LOG = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def record(entry):
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


class SetLevel(ModbusPDU):
    """Function 0x6F: 00 00 vv vv; 000F = full, 0000 = empty."""

    function_code = 0x6F
    rtu_frame_size = 8

    def __init__(self, dev_id=1, transaction_id=0, level=0):
        super().__init__(dev_id=dev_id, transaction_id=transaction_id)
        self.level = level

    def encode(self):
        return struct.pack(">HH", 0, self.level)

    def decode(self, data):
        _, self.level = struct.unpack(">HH", data[:4])

    async def datastore_update(self, context, device_id):
        record({"function": 0x6F, "level": self.level})
        return SetLevel(dev_id=self.dev_id, transaction_id=self.transaction_id, level=self.level)


def regs(size, values):
    block = [0] * size
    for reg, value in values.items():
        block[reg] = value & 0xFFFF
    return block


# Counter: 64 %, 25 °C, 26.61 V, 8.50 A charging, 226.1 W, 1 234.56 Wh, 131 072 + 4 660 = 135 732 mAh.
# pymodbus addresses sequential blocks from 1: a block made at address 1 holds register N at index N.
COIL_INPUTS = regs(12, {0: 64, 1: 25, 2: 2661, 3: 850, 4: 0, 5: 2261, 6: 1, 7: 57920, 8: 2, 9: 0x1234, 10: 0, 11: 2})
COIL_HOLDING = regs(10, {0: 1, 1: 3, 2: 0x20C8, 3: 2735, 4: 2200, 5: 2900, 6: 20000, 7: 70, 8: 2000, 9: 10})
# Inverter: off-grid, 230.1 V mains, 26.4 V / -5.6 A battery, SOC 58 %, SBU, PV only, 30 A.
VEVOR = regs(800, {201: 3, 202: 2301, 203: 5000, 215: 264, 216: -56, 217: -148, 219: 1480, 223: 640, 229: 58,
                   301: 2, 331: 3, 332: 300, 341: 30, 342: 60, 343: 5, 420: 1, 761: 27350, 773: 58})


async def main():
    coil = ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, COIL_INPUTS), hr=ModbusSequentialDataBlock(1, COIL_HOLDING))
    vevor = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, VEVOR))
    servers = [
        ModbusTcpServer(ModbusServerContext(devices={1: coil}), framer=FramerType.RTU,
                        address=("127.0.0.1", COIL_PORT), custom_pdu=[SetLevel]),
        ModbusTcpServer(ModbusServerContext(devices={1: vevor}), framer=FramerType.RTU,
                        address=("127.0.0.1", VEVOR_PORT)),
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
