// Passive health checking (Envoy outlier detection): the decisions, as pure functions over a
// BackendState. Consecutive connection failures or 5xx eject a backend for base × streak (capped);
// never more than max_ejection_percent of the pool at once, but always at least one may be.

import type { OutlierDetectionConfig } from '../config/types.ts';
import type { BackendState } from './backend-state.ts';

/** Why a backend is ejected. */
export type EjectionReason = 'connect-failures' | '5xx';

/**
 * Records a connection failure.
 * @returns 'connect-failures' when the threshold is reached (the caller ejects if allowed), else null
 */
export function recordConnectFailure(s: BackendState, od: OutlierDetectionConfig): EjectionReason | null {
  s.failures++;
  s.consecutiveConnectFailures++;
  const limit = od.consecutive_connect_failures;
  return limit > 0 && s.consecutiveConnectFailures >= limit ? 'connect-failures' : null;
}

/**
 * Records a response (a connection worked, so the connect-failure streak ends).
 * @param status - the backend's status, or 502/504 that seglb answered for it (timeouts, broken responses)
 * @returns '5xx' when the consecutive-5xx threshold is reached, else null
 */
export function recordResponse(
  s: BackendState,
  status: number,
  od: OutlierDetectionConfig,
): EjectionReason | null {
  s.consecutiveConnectFailures = 0;
  if (status < 500) {
    s.consecutive5xx = 0;
    return null;
  }
  s.responses5xx++;
  s.consecutive5xx++;
  const limit = od.consecutive_5xx;
  return limit > 0 && s.consecutive5xx >= limit ? '5xx' : null;
}

/**
 * Whether one more backend may be ejected.
 * @param ejected - backends of the pool ejected now
 * @param size - backends in the pool
 * Envoy caps ejections at max_ejection_percent but always lets one host be ejected; so does seglb
 * (unless the percentage is 0, which turns ejection off).
 */
export function ejectionAllowed(ejected: number, size: number, maxPercent: number): boolean {
  if (maxPercent <= 0) return false;
  if (ejected === 0) return true;
  return (ejected + 1) * 100 <= size * maxPercent;
}

/**
 * Ejects a backend: sets ejectedUntil and bumps the streak.
 * @returns the ejection time in ms
 * The n-th ejection in a row lasts n × base_ejection_ms, at most max(base, max_ejection_ms) (Envoy's
 * multiplier); a backend that stayed in service for max_ejection_ms since its last return starts
 * again at 1 × base.
 */
export function eject(s: BackendState, od: OutlierDetectionConfig, now: number): number {
  if (s.returnedAt > 0 && now - s.returnedAt >= od.max_ejection_ms) s.ejectionStreak = 0;
  s.ejectionStreak++;
  const cap = Math.max(od.base_ejection_ms, od.max_ejection_ms);
  const duration = Math.min(od.base_ejection_ms * s.ejectionStreak, cap);
  s.ejectedUntil = now + duration;
  s.ejections++;
  s.consecutiveConnectFailures = 0;
  s.consecutive5xx = 0;
  return duration;
}

/** Ends an ejection (its time is up). */
export function unEject(s: BackendState, now: number): void {
  s.ejectedUntil = 0;
  s.returnedAt = now;
}
