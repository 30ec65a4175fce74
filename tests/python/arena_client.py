"""A centrum client in Python, written from PROTOCOL.md alone (msgpack + websockets).

Usage: arena_client.py WS_URL_A WS_URL_B
Client "ana" joins `arena` through front A, client "bo" through front B. Each must be
told by the game's `you` message (type 8) which player is its own: an entity of kind
`player` with the name it joined with, already in the mirror when the message arrives.
Ana steers; the script exits 0 once ana sees her own player move with her input acked
AND bo, on the other front, sees the same move. Any other outcome exits non-zero.
"""
import asyncio
import sys

import msgpack
import websockets

PROTOCOL_VERSION = 2
HELLO, JOIN, INPUT = 0, 1, 3
WELCOME, STATE, PATCH, ERROR, MESSAGE = 0, 1, 2, 6, 8


class Mirror:
    """Full state plus patches, per PROTOCOL.md section 9."""

    def __init__(self):
        self.schema, self.entities, self.ack, self.tick = None, {}, 0, None

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
            self.ack, _channel, self.tick, self.schema, flat = body
            self.entities = self._read(flat)
        elif kind == PATCH:
            self.ack, _channel, self.tick, removed, spawned, updated = body
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

    def field(self, eid, name):
        """A field of entity `eid` by name (fixed fields divided by their scale), or None."""
        entity = self.entities.get(eid)
        if entity is None:
            return None
        kind_name, fields = self.schema[entity[0]]
        for i, (field_name, field_type, scale) in enumerate(fields):
            if field_name == name:
                value = entity[1 + i]
                return value / scale if field_type == "fixed" else value
        return None

    def kind_of(self, eid):
        entity = self.entities.get(eid)
        return None if entity is None else self.schema[entity[0]][0]


class Conn:
    """One client: its WebSocket, its mirror of `arena`, and the game's messages."""

    def __init__(self, ws, name):
        self.ws, self.name, self.mirror = ws, name, Mirror()
        self.welcome, self.you = None, None

    async def recv(self):
        kind, body = msgpack.unpackb(await self.ws.recv())
        if kind in (STATE, PATCH):
            self.mirror.apply(kind, body)
        elif kind == MESSAGE:
            channel, tick, data = body
            value = msgpack.unpackb(data)  # the game's own MessagePack, inside a bin
            if isinstance(value, dict) and "you" in value:
                assert channel == "arena", f"a message of channel {channel!r}"
                assert self.mirror.tick == tick, \
                    f"`you` of tick {tick} arrived with the mirror at tick {self.mirror.tick}, not after that tick's State"
                player = value["you"]["player"]
                assert value == {"you": {"player": player}}, f"unexpected `you` message {value!r}"
                assert self.mirror.kind_of(player) == "player", \
                    f"`you` names entity {player}, which is {self.mirror.kind_of(player)!r}, not a player"
                assert self.mirror.field(player, "name") == self.name, \
                    f"`you` names player {player}, called {self.mirror.field(player, 'name')!r}, not {self.name!r}"
                self.you = player
        elif kind == ERROR:
            code, message = body
            raise AssertionError(f"{self.name}: error {code}: {message}")
        else:
            raise AssertionError(f"{self.name}: unexpected message {kind} {body!r}")

    async def until(self, done):
        while not done():
            await self.recv()

    def x(self):
        return self.mirror.field(self.you, "x")


async def connect(url, name):
    ws = await websockets.connect(url)
    await ws.send(msgpack.packb([HELLO, [PROTOCOL_VERSION, "", None]]))
    kind, welcome = msgpack.unpackb(await ws.recv())
    assert kind == WELCOME, f"expected Welcome, got {kind} {welcome!r}"
    version, _session, _resume, _front, resumed = welcome
    assert version == PROTOCOL_VERSION, f"Welcome of version {version}"
    assert resumed is False, "a Hello without a resume token starts a new session"
    conn = Conn(ws, name)
    conn.welcome = welcome
    await ws.send(msgpack.packb([JOIN, ["arena", msgpack.packb({"name": name})]]))
    await conn.until(lambda: conn.mirror.schema is not None)
    # The game says which player is ours, in a message after the State of the join.
    await conn.until(lambda: conn.you is not None)
    return conn


async def main(url_a, url_b):
    ana = await connect(url_a, "ana")
    bo = await connect(url_b, "bo")
    front_a, front_b = ana.welcome[3], bo.welcome[3]
    assert front_a != front_b, "the two clients should be on different fronts"
    assert ana.you != bo.you, "two clients, two players"
    await bo.until(lambda: bo.mirror.field(ana.you, "name") == "ana")
    start = bo.mirror.field(ana.you, "x")
    direction = 1.0 if start < 32 else -1.0
    await ana.ws.send(msgpack.packb([INPUT, ["arena", 1, msgpack.packb({"dx": direction, "dy": 0.0})]]))
    await ana.until(lambda: ana.mirror.ack == 1 and (ana.x() - start) * direction > 1)
    await bo.until(lambda: (bo.mirror.field(ana.you, "x") - start) * direction > 1)
    print(f"ok: ana moved from x={start:.2f}; ana sees {ana.x():.2f} on {front_a}, "
          f"bo sees {bo.mirror.field(ana.you, 'x'):.2f} on {front_b}; "
          f"the game told ana she is player {ana.you} and bo he is player {bo.you}")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), timeout=20))
