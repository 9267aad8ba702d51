/**
 * The NBD protocol layer, pure (no sockets): constants, the server handshake
 * state machine, the request parser, the reply serializer and request
 * validation. See each module's header for its API.
 */
export * from './constants.ts';
export * from './errno.ts';
export * from './export-info.ts';
export * from './handshake.ts';
export * from './transmission.ts';
export * from './replies.ts';
export * from './validate.ts';
