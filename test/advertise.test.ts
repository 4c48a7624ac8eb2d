/** lib/advertise.ts: the address the other server reaches this one at, derived from HOST and the machine's interfaces. */
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { test } from 'node:test';
import { advertiseUrl } from '../lib/advertise.js';

const nic = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo => ({
  address, family, internal, netmask: family === 'IPv4' ? '255.255.255.0' : 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: null,
  ...(family === 'IPv6' ? { scopeid: 0 } : {}),
} as NetworkInterfaceInfo);

const machine = {
  lo: [nic('127.0.0.1', 'IPv4', true), nic('::1', 'IPv6', true)],
  eth0: [nic('fe80::1', 'IPv6'), nic('10.0.1.23', 'IPv4')],
  eth1: [nic('192.168.5.5', 'IPv4')],
};

test('a HOST that is one address is advertised as it is, with the port listened on', () => {
  assert.equal(advertiseUrl('127.0.0.1', 5000, machine), 'http://127.0.0.1:5000');
  assert.equal(advertiseUrl('10.9.8.7', 41234, machine), 'http://10.9.8.7:41234');
  assert.equal(advertiseUrl('box.internal', 5000, machine), 'http://box.internal:5000');
});

test('an IPv6 HOST is written in brackets', () => {
  assert.equal(advertiseUrl('::1', 5000, machine), 'http://[::1]:5000');
  assert.equal(advertiseUrl('fd00::17', 80, machine), 'http://[fd00::17]:80');
  assert.equal(advertiseUrl('[fd00::17]', 80, machine), 'http://[fd00::17]:80');
});

test('a HOST of every interface advertises the first non-internal IPv4 address', () => {
  for (const host of ['0.0.0.0', '::', '', '[::]']) assert.equal(advertiseUrl(host, 5000, machine), 'http://10.0.1.23:5000', host);
});

test('with no non-internal IPv4 address, 127.0.0.1', () => {
  assert.equal(advertiseUrl('0.0.0.0', 5000, { lo: machine.lo, eth0: [nic('fe80::1', 'IPv6')] }), 'http://127.0.0.1:5000');
  assert.equal(advertiseUrl('::', 7000, {}), 'http://127.0.0.1:7000');
});
