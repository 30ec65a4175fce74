// centrum-client: the JavaScript client of centrum. README.md shows a whole session.
export { Client } from './client.js';
export { Channel } from './channel.js';
export { Matchmaker } from './matchmaker.js';
export { Mirror } from './mirror.js';
export { serialAfter } from './serial.js';
export { CentrumError } from './errors.js';
export { PROTOCOL_VERSION } from './codec.js';
