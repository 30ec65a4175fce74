// A client's copy of one channel's state (PROTOCOL.md §9): built from a State, advanced by
// each Patch, with the changes each one made, so a Channel can tell the application what
// was added, changed and removed. Values appear as the application declared them: `fixed`
// fields as numbers (q / scale), `int`/`uint` as numbers, or BigInt beyond 2^53.
import { CentrumError } from './errors.js';
import { serialAfter } from './serial.js';

/**
 * One entity as the application sees it.
 * @typedef {{ id: number, kind: string, fields: Record<string, unknown> }} Entity
 * What one State or Patch did to the mirror.
 * @typedef {{ added: Entity[], changed: [Entity, string[]][], removed: Entity[] }} Changes
 */

export class Mirror {
  /** The kinds of entity and their fields, from the latest State. */
  schema = [];
  /** The tick the mirror is at; -1 before the first State. */
  tick = -1;
  /** @type {Map<number, Entity>} by entity id */
  entities = new Map();

  /**
   * Replaces everything with a State's content.
   * @returns {Changes} what differs from the mirror before
   * @throws {CentrumError} `protocol` when the entities do not fit the schema
   */
  replace(state) {
    const next = new Map();
    readWhole(state.entities, state.schema, (entity) => next.set(entity.id, entity));
    const changes = { added: [], changed: [], removed: [] };
    for (const [id, old] of this.entities) {
      const now = next.get(id);
      if (!now || now.kind !== old.kind) changes.removed.push(old);
    }
    for (const [id, now] of next) {
      const old = this.entities.get(id);
      if (!old || old.kind !== now.kind) {
        changes.added.push(now);
        continue;
      }
      const names = Object.keys(now.fields).filter((name) => !sameValue(old.fields[name], now.fields[name]));
      // Keep the application's entity objects: it may hold references to them.
      Object.assign(old.fields, now.fields);
      next.set(id, old);
      if (names.length) changes.changed.push([old, names]);
    }
    this.schema = state.schema;
    this.tick = state.tick;
    this.entities = next;
    return changes;
  }

  /**
   * Applies a Patch: removed, then spawned, then updated (§9.5).
   * @returns {Changes}
   * @throws {CentrumError} `protocol` when the patch does not fit the mirror, which is then
   *   no longer trustworthy (the caller gets a fresh State by rejoining or reconnecting)
   */
  apply(patch) {
    if (this.tick < 0) throw mismatch('a patch before any state');
    if (!serialAfter(patch.tick, this.tick)) throw mismatch(`patch tick ${patch.tick} is not after ${this.tick}`);
    const changes = { added: [], changed: [], removed: [] };
    for (const id of patch.removed) {
      const entity = this.entities.get(id);
      if (!entity) throw mismatch(`removed entity ${id} is unknown`);
      this.entities.delete(id);
      changes.removed.push(entity);
    }
    readWhole(patch.spawned, this.schema, (entity) => {
      if (this.entities.has(entity.id)) throw mismatch(`spawned entity ${entity.id} exists`);
      this.entities.set(entity.id, entity);
      changes.added.push(entity);
    });
    const updated = patch.updated;
    let id = 0;
    let i = 0;
    while (i < updated.length) {
      if (i + 1 >= updated.length) throw mismatch('updated ends inside an entry');
      id += u32(updated[i], 'id delta');
      const entity = this.entities.get(id);
      if (!entity) throw mismatch(`updated entity ${id} is unknown`);
      const kind = this.schema[entity.kindIndex];
      const names = [];
      i += 2;
      for (const f of maskBits(updated[i - 1], kind.fields.length)) {
        if (i >= updated.length) throw mismatch('updated ends inside an entry');
        const field = kind.fields[f];
        entity.fields[field.name] = readValue(updated[i], field);
        names.push(field.name);
        i += 1;
      }
      changes.changed.push([entity, names]);
    }
    this.tick = patch.tick;
    return changes;
  }
}

/** Walks a flat `id, kind, value…` array (§9.3), calling `each` with every entity. */
function readWhole(flat, schema, each) {
  let i = 0;
  while (i < flat.length) {
    if (i + 1 >= flat.length) throw mismatch('entities end inside an entity');
    const id = u32(flat[i], 'entity id');
    const kindIndex = flat[i + 1];
    const kind = schema[kindIndex];
    if (!Number.isInteger(kindIndex) || !kind) throw mismatch(`entity ${id} has unknown kind ${String(kindIndex)}`);
    if (i + 2 + kind.fields.length > flat.length) throw mismatch(`entity ${id} has too few values`);
    const fields = {};
    kind.fields.forEach((field, f) => {
      fields[field.name] = readValue(flat[i + 2 + f], field);
    });
    each(defineEntity(id, kind.name, kindIndex, fields));
    i += 2 + kind.fields.length;
  }
}

/** An entity with its kind's index kept out of the way (not enumerable). */
function defineEntity(id, kind, kindIndex, fields) {
  const entity = { id, kind, fields };
  Object.defineProperty(entity, 'kindIndex', { value: kindIndex, enumerable: false });
  return entity;
}

/** The field numbers set in `mask`, lowest first (§9.4); a mask may be a BigInt. */
function maskBits(mask, count) {
  const bits = [];
  if (typeof mask === 'bigint') {
    for (let f = 0; mask > 0n; f++, mask >>= 1n) if (mask & 1n) bits.push(f);
  } else if (Number.isInteger(mask) && mask >= 0) {
    for (let f = 0; mask > 0; f++, mask = Math.floor(mask / 2)) if (mask % 2 === 1) bits.push(f);
  } else {
    throw mismatch('a patch mask is not an unsigned integer');
  }
  if (bits.length && bits[bits.length - 1] >= count) throw mismatch(`a mask names field ${bits[bits.length - 1]} of a kind with ${count}`);
  return bits;
}

/** One wire value of `field`, checked against its type and converted (§9.2). */
function readValue(value, field) {
  switch (field.type) {
    case 'bool':
      if (typeof value === 'boolean') return value;
      break;
    case 'int':
    case 'uint':
      if (isInt(value) && (field.type === 'int' || value >= 0)) return smallNumber(value);
      break;
    case 'f32':
    case 'f64':
      if (typeof value === 'number') return value;
      break;
    case 'fixed':
      if (isInt(value)) return Number(value) / field.scale;
      break;
    case 'str':
      if (typeof value === 'string') return value;
      break;
    case 'bytes':
      if (value instanceof Uint8Array) return value;
      break;
  }
  throw mismatch(`field ${field.name} (${field.type}) holds ${typeof value}`);
}

function isInt(value) {
  return (typeof value === 'number' && Number.isInteger(value)) || typeof value === 'bigint';
}

function smallNumber(value) {
  if (typeof value === 'bigint' && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(value);
  }
  return value;
}

function u32(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw mismatch(`${what} is not a u32`);
  return value;
}

function sameValue(a, b) {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  return a === b;
}

function mismatch(message) {
  return new CentrumError('protocol', `the state does not fit the mirror: ${message}`, false);
}
