// The master's gate (PROTOCOL.md §3): which front a client of `channel` should dial.
import { CentrumError } from './errors.js';

/**
 * Asks `gate` (the master's HTTP address, e.g. `http://127.0.0.1:7300`) for a front.
 * @returns {Promise<{ url: string, front: string, channel: string }>}
 * @throws {CentrumError} `gate_failed` with the master's own error message when it has one
 */
export async function askGate(gate, channel, timeoutMs) {
  const url = `${gate.replace(/\/+$/, '')}/gate?channel=${encodeURIComponent(channel)}`;
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new CentrumError('gate_failed', `cannot reach the gate at ${url}: ${err.message}`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new CentrumError('gate_failed', `the gate at ${url} answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    throw new CentrumError('gate_failed', `the gate at ${url} answered ${response.status}: ${body?.error ?? 'no reason given'}`);
  }
  if (typeof body?.url !== 'string') {
    throw new CentrumError('gate_failed', `the gate at ${url} named no front URL`);
  }
  return body;
}
