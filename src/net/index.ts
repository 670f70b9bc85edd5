// Public surface of src/net: address parsing/formatting/normalisation and CIDR prefixes.

export type { Address, AddressV4, AddressV6 } from './address.ts';
export {
  formatAddress,
  formatIPv4,
  formatIPv6,
  normaliseSource,
  parseAddress,
  parseIPv4,
  parseIPv4Range,
  parseIPv6,
  parseIPv6Range,
  unmapV4,
} from './address.ts';
export type {
  Cidr,
  CidrList,
  CidrListError,
  CidrV4,
  CidrV6,
  ParseCidrListOptions,
  ParseCidrOptions,
} from './cidr.ts';
export {
  cidrContains,
  cidrCovers,
  DEFAULT_MAX_LIST_ERRORS,
  maskV4,
  parseCidr,
  parseCidrList,
} from './cidr.ts';
export type { Endpoint } from './endpoint.ts';
export { formatEndpoint, parseEndpoint } from './endpoint.ts';
export { ipsetSize, PackedCidrMap } from './packed-cidrs.ts';
