"""A centrum client in Python, written from PROTOCOL.md alone (msgpack + websockets).

Usage: arena_client.py WS_URL_A WS_URL_B
Client "ana" joins `arena` through front A, client "bo" through front B. Ana steers;
the script exits 0 once ana sees her own player move with her input acked AND bo,
on the other front, sees the same move. Any other outcome exits non-zero.
"""
import asyncio
import sys

import msgpack
import websockets

HELLO, JOIN, INPUT = 0, 1, 3
WELCOME, STATE, PATCH = 0, 1, 2


class Mirror:
    """Full state plus patches, per PROTOCOL.md section 9."""

    def __init__(self):
        self.schema, self.entities, self.ack = None, {}, 0

    def _read(self, flat):
        i, out = 0, {}
        while i < len(flat):
            eid, kind = flat[i], flat[i + 1]
            n = len(self.schema[kind][1])
            out[eid] = [kind] + list(flat[i + 2:i + 2 + n])
            i += 2 + n
        return out

    def apply(self, kind, body):
        if kind == STATE:
            self.ack, _channel, _tick, self.schema, flat = body
            self.entities = self._read(flat)
        elif kind == PATCH:
            self.ack, _channel, _tick, removed, spawned, updated = body
            for eid in removed:
                self.entities.pop(eid, None)
            self.entities.update(self._read(spawned))
            i, eid = 0, 0
            while i < len(updated):
                eid += updated[i]
                mask = updated[i + 1]
                i += 2
                field = 0
                while mask:
                    if mask & 1:
                        self.entities[eid][1 + field] = updated[i]
                        i += 1
                    mask >>= 1
                    field += 1

    def player_x(self, name):
        fields = [f[0] for f in self.schema[0][1]]
        x, scale = fields.index("x"), self.schema[0][1][fields.index("x")][2]
        for e in self.entities.values():
            if e[0] == 0 and e[1 + fields.index("name")] == name:
                return e[1 + x] / scale
        return None


async def connect(url, name):
    ws = await websockets.connect(url)
    await ws.send(msgpack.packb([HELLO, [1, "", None]]))
    kind, welcome = msgpack.unpackb(await ws.recv())
    assert kind == WELCOME, f"expected Welcome, got {kind}"
    await ws.send(msgpack.packb([JOIN, ["arena", msgpack.packb({"name": name})]]))
    mirror = Mirror()
    while mirror.schema is None:
        kind, body = msgpack.unpackb(await ws.recv())
        assert kind in (STATE, PATCH), f"join failed: {kind} {body}"
        mirror.apply(kind, body)
    return ws, mirror, welcome[3]


async def until(ws, mirror, done):
    while not done():
        kind, body = msgpack.unpackb(await ws.recv())
        mirror.apply(kind, body)


async def main(url_a, url_b):
    ana, ana_m, front_a = await connect(url_a, "ana")
    bo, bo_m, front_b = await connect(url_b, "bo")
    assert front_a != front_b, "the two clients should be on different fronts"
    await until(bo, bo_m, lambda: bo_m.player_x("ana") is not None)
    start = bo_m.player_x("ana")
    direction = 1.0 if start < 32 else -1.0
    await ana.send(msgpack.packb([INPUT, ["arena", 1, msgpack.packb({"dx": direction, "dy": 0.0})]]))
    await until(ana, ana_m, lambda: ana_m.ack == 1 and (ana_m.player_x("ana") - start) * direction > 1)
    await until(bo, bo_m, lambda: (bo_m.player_x("ana") - start) * direction > 1)
    print(f"ok: ana moved from x={start:.2f}; ana sees {ana_m.player_x('ana'):.2f} on {front_a}, "
          f"bo sees {bo_m.player_x('ana'):.2f} on {front_b}")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), timeout=20))
