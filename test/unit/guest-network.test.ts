// The guest agent's network set-up as commands: the order, a warm VM's NIC given the pod's MAC,
// and values that could reach a shell refused before any command is made.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkNetwork, networkCommands, type GuestInterface } from '../../src/guest/agent/network.js';

const eth0: GuestInterface = { name: 'eth0', mac: '0a:58:0a:58:00:05', mtu: 1450, addresses: ['10.88.0.5/16'], guestMac: '' };
const routes = [{ destination: 'default', gateway: '10.88.0.1', device: 'eth0', family: 4 }];

describe('guest network commands', () => {
  it('names, addresses and brings up each NIC, then adds the routes', () => {
    assert.deepEqual(
      networkCommands([eth0], routes, () => 'enp0s3'),
      [
        'ip link set lo up',
        'ip link set dev enp0s3 name eth0',
        'ip link set dev eth0 mtu 1450',
        'ip addr add 10.88.0.5/16 dev eth0',
        'ip link set dev eth0 up',
        'ip -4 route replace default via 10.88.0.1 dev eth0',
      ],
    );
  });

  it("gives a warm VM's NIC, found by its MAC until now, the pod's MAC", () => {
    const warm = { ...eth0, mtu: 0, guestMac: '02:11:22:33:44:55' };
    let askedFor: GuestInterface | undefined;
    const commands = networkCommands([warm], [], (nic) => {
      askedFor = nic;
      return 'eth0';
    });
    assert.equal(askedFor, warm);
    assert.deepEqual(commands, [
      'ip link set lo up',
      'ip link set dev eth0 address 0a:58:0a:58:00:05',
      'ip addr add 10.88.0.5/16 dev eth0',
      'ip link set dev eth0 up',
    ]);
  });

  it('refuses values a shell would read before any command is made', () => {
    assert.throws(() => checkNetwork([{ ...eth0, name: 'eth0;reboot' }], []), /interface name/);
    assert.throws(() => checkNetwork([{ ...eth0, guestMac: '02:11:22:33:44:55 x' }], []), /MAC/);
    assert.throws(() => checkNetwork([{ ...eth0, addresses: ['10.0.0.1/8$(id)'] }], []), /address/);
    assert.throws(() => checkNetwork([eth0], [{ ...routes[0]!, gateway: '`id`' }]), /gateway/);
    assert.doesNotThrow(() => checkNetwork([eth0], routes));
  });
});
