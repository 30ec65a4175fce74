// The client against a scripted front (test/scripted.js): what it does with each server
// message, exactly and without a cluster. Hello and Welcome of version 2, the game's
// messages and which channels hear them, seqs across the wrap, and `resumed`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '@msgpack/msgpack';

import { Client } from '../src/index.js';
import { ScriptedFront, left, message, patch, state, unavailable, welcome } from './scripted.js';
import { within } from './util.js';

const ANA = [5, 0, 1000, 2000, 'ana', 20, 0];

/** A client welcomed by a scripted front, and the socket it talks on. */
async function connected(options = {}) {
  const front = new ScriptedFront();
  const connecting = Client.connect({ url: 'ws://scripted' }, { WebSocket: front.WebSocket, reconnect: false, ...options });
  const socket = await within('the client opens a socket', front.nextSocket());
  assert.deepEqual(await within('Hello', socket.nextFrame()), [0, [2, '', null]], 'Hello of version 2, no resume token');
  socket.deliver(welcome('front-1-7', 'token-1'));
  const client = await within('Welcome', connecting);
  return { front, socket, client };
}

/** Joins `arena`; the script answers with `replies` in one go. */
async function joined(socket, client, ...replies) {
  const joining = client.join('arena', { name: 'ana' });
  const [type, [name]] = await within('Join', socket.nextFrame());
  assert.deepEqual([type, name], [1, 'arena']);
  socket.deliver(...replies);
  return within('the join resolves', joining);
}

test('a listener added after `await join()` hears the message that came in the same read as the State', async () => {
  const { socket, client } = await connected();
  assert.equal(client.resumed, false, 'a first connection is not resumed');
  // Node's ws emits both at once; the listener below is added a few promise jobs later.
  const arena = await joined(socket, client, state('arena', 40, 0, ANA), message('arena', 40, { you: { player: 5 } }));
  const heard = new Promise((resolve) => arena.on('message', (data, info) => resolve({ data, info, tick: arena.tick })));
  const { data, info, tick } = await within('the message', heard, 2_000);
  assert.deepEqual(data, { you: { player: 5 } });
  assert.equal(info.tick, 40);
  assert.deepEqual(decode(info.bytes), data, 'bytes are the message as it arrived');
  assert.equal(tick, 40, 'the mirror is at the State\'s tick');
  assert.equal(arena.mirror.entities.get(5).fields.name, 'ana');
  await client.close();
});

test('messages reach a channel only while it is in it, in order with its patches', async () => {
  const { socket, client } = await connected();
  const seen = [];
  const joining = client.join('arena', { name: 'ana' });
  const channel = client.channel('arena');
  channel.on('message', (data, info) => seen.push(['message', data, info.tick]));
  channel.on('state', ({ tick }) => seen.push(['state', tick]));
  channel.on('patch', ({ tick }) => seen.push(['patch', tick]));
  await within('Join', socket.nextFrame());
  // Before its State a channel hears nothing; a channel the client is not in, never.
  socket.deliver(message('arena', 39, 'early'), state('arena', 40, 0, ANA), message('arena', 40, 'a'), message('lobby', 40, 'elsewhere'),
    patch('arena', 41, 0), message('arena', 41, 'b'));
  const arena = await within('join', joining);
  await within('b', new Promise((resolve) => arena.on('message', (data) => data === 'b' && resolve())));
  assert.deepEqual(seen, [['state', 40], ['message', 'a', 40], ['patch', 41], ['message', 'b', 41]]);

  // Unavailable: still in the channel, so still hears the game.
  seen.length = 0;
  socket.deliver(unavailable('arena'), message('arena', 41, 'c'));
  assert.equal(arena.state, 'unavailable');
  assert.deepEqual(seen, [['message', 'c', 41]]);

  // After its own Leave, nothing more, though the front had queued a message before Left.
  seen.length = 0;
  const leaving = arena.leave();
  assert.deepEqual(await within('Leave', socket.nextFrame()), [2, ['arena']]);
  socket.deliver(message('arena', 42, 'd'), left('arena'));
  await within('left', leaving);
  socket.deliver(message('arena', 43, 'e'));
  assert.deepEqual(seen, []);
  await client.close();
});

test('a message whose data is not MessagePack is an error event; the connection carries on', async () => {
  const { socket, client } = await connected();
  const arena = await joined(socket, client, state('arena', 40, 0, ANA));
  const errors = [];
  client.on('error', (err) => errors.push(err));
  const heard = [];
  arena.on('message', (data) => heard.push(data));
  const patched = new Promise((resolve) => arena.once('patch', resolve));
  socket.deliver(message('arena', 40, Uint8Array.of(0xc1)), patch('arena', 41, 0), message('arena', 41, 'fine'));
  await within('the patch after it', patched);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'protocol');
  assert.equal(errors[0].fatal, false);
  assert.deepEqual(heard, ['fine']);
  assert.equal(client.state, 'open');
  await client.close();
});

test('seqs go 4294967295, then 1: never 0', async () => {
  const { socket, client } = await connected();
  // A resumed membership whose ack another connection moved to 4294967294: the count
  // goes on after it, since the back refuses a seq that is not after its ack (bad_seq).
  const arena = await joined(socket, client, state('arena', 40, 0xfffffffe, ANA));
  const sent = async () => {
    const [type, [channel, seq, data]] = await within('Input', socket.nextFrame());
    assert.deepEqual([type, channel, decode(data)], [3, 'arena', { dx: 1, dy: 0 }]);
    return seq;
  };
  assert.equal(arena.sendInput({ dx: 1, dy: 0 }), 0xffffffff);
  assert.equal(await sent(), 0xffffffff);
  assert.equal(arena.sendInput({ dx: 1, dy: 0 }), 1);
  assert.equal(await sent(), 1);
  // A new membership (ack 0, after unavailable) takes any seq: the count goes on.
  socket.deliver(unavailable('arena'), state('arena', 50, 0, ANA));
  assert.equal(arena.sendInput({ dx: 1, dy: 0 }), 2);
  assert.equal(await sent(), 2);
  await client.close();
});

test('`resumed` is the Welcome\'s, and the reconnect presents the resume token', async () => {
  const { front, socket, client } = await connected({ reconnect: true });
  const arena = await joined(socket, client, state('arena', 40, 0, ANA));
  const reconnects = [];
  client.on('reconnected', (e) => reconnects.push(e));

  // The same session id, but the server says it did not resume: the Welcome decides.
  socket.drop();
  const second = await within('the client dials again', front.nextSocket());
  assert.deepEqual(await within('Hello', second.nextFrame()), [0, [2, '', 'token-1']]);
  second.deliver(welcome('front-1-7', 'token-2', false));
  const [type, [name]] = await within('the channel is joined again', second.nextFrame());
  assert.deepEqual([type, name], [1, 'arena']);
  assert.deepEqual(reconnects, [{ resumed: false }]);
  assert.equal(client.resumed, false);
  second.deliver(state('arena', 60, 0, ANA));
  assert.equal(arena.state, 'joined');

  second.drop();
  const third = await within('the client dials again', front.nextSocket());
  assert.deepEqual(await within('Hello', third.nextFrame()), [0, [2, '', 'token-2']]);
  third.deliver(welcome('front-1-7', 'token-3', true));
  await within('the channel is joined again', third.nextFrame());
  assert.deepEqual(reconnects, [{ resumed: false }, { resumed: true }]);
  assert.equal(client.resumed, true);
  await client.close();
});
