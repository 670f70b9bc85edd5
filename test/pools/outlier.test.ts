// Outlier detection decisions: thresholds, growing ejection time, and the max_ejection_percent cap
// (with Envoy's "one may always be ejected").

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OutlierDetectionConfig } from '../../src/config/types.ts';
import { BackendState } from '../../src/pools/backend-state.ts';
import {
  eject,
  ejectionAllowed,
  recordConnectFailure,
  recordResponse,
  unEject,
} from '../../src/pools/outlier.ts';

const od: OutlierDetectionConfig = {
  consecutive_connect_failures: 3,
  consecutive_5xx: 2,
  base_ejection_ms: 1000,
  max_ejection_ms: 3500,
  max_ejection_percent: 10,
};

describe('outlier detection', () => {
  it('fires after consecutive failures; a response ends the connect-failure streak', () => {
    const s = new BackendState('p', '10.0.0.1:80', 'b');
    assert.equal(recordConnectFailure(s, od), null);
    assert.equal(recordConnectFailure(s, od), null);
    assert.equal(recordResponse(s, 200, od), null);
    assert.equal(recordConnectFailure(s, od), null);
    assert.equal(recordConnectFailure(s, od), null);
    assert.equal(recordConnectFailure(s, od), 'connect-failures');
    assert.equal(s.failures, 5);
  });

  it('counts consecutive 5xx; any other status resets; 0 turns a check off', () => {
    const s = new BackendState('p', '10.0.0.1:80', 'b');
    assert.equal(recordResponse(s, 503, od), null);
    assert.equal(recordResponse(s, 404, od), null);
    assert.equal(recordResponse(s, 500, od), null);
    assert.equal(recordResponse(s, 502, od), '5xx');
    const off = { ...od, consecutive_5xx: 0, consecutive_connect_failures: 0 };
    for (let i = 0; i < 10; i++) {
      assert.equal(recordResponse(s, 500, off), null);
      assert.equal(recordConnectFailure(s, off), null);
    }
  });

  it('ejects for base × streak, capped, and resets the streak after a quiet max_ejection_ms', () => {
    const s = new BackendState('p', '10.0.0.1:80', 'b');
    assert.equal(eject(s, od, 0), 1000);
    assert.ok(s.isEjected(999) && !s.isEjected(1000));
    unEject(s, 1000);
    assert.equal(eject(s, od, 1100), 2000);
    unEject(s, 3100);
    assert.equal(eject(s, od, 3200), 3000);
    unEject(s, 6200);
    assert.equal(eject(s, od, 6300), 3500, 'capped at max_ejection_ms');
    unEject(s, 9800);
    assert.equal(eject(s, od, 9800 + 3500), 1000, 'in service for max_ejection_ms: the streak starts again');
    assert.equal(s.ejections, 5);
  });

  it('never ejects more than max_ejection_percent, but always one', () => {
    assert.equal(ejectionAllowed(0, 3, 10), true, 'one may always be ejected');
    assert.equal(ejectionAllowed(1, 3, 10), false);
    assert.equal(ejectionAllowed(1, 20, 10), true);
    assert.equal(ejectionAllowed(2, 20, 10), false);
    assert.equal(ejectionAllowed(1, 4, 50), true);
    assert.equal(ejectionAllowed(2, 4, 50), false);
    assert.equal(ejectionAllowed(0, 4, 0), false, '0 % turns ejection off');
  });
});
