import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { TernError } from '../errors.ts';

// The only place that knows HTTP status codes and Trove's fault names.

const FAULTS: Record<string, [number, string]> = {
  badRequest: [400, 'badRequest'],
  unauthorized: [401, 'unauthorized'],
  forbidden: [403, 'forbidden'],
  itemNotFound: [404, 'itemNotFound'],
  conflict: [409, 'conflict'],
  overLimit: [413, 'overLimit'],
  unprocessableEntity: [422, 'unprocessableEntity'],
  notImplemented: [501, 'notImplemented'],
  // Storage trouble met while serving a request: the client may retry later.
  storageUnavailable: [503, 'serviceUnavailable'],
  storageAuthFailed: [503, 'serviceUnavailable'],
  objectNotFound: [404, 'itemNotFound'],
  invalidKey: [400, 'badRequest'],
  integrity: [422, 'unprocessableEntity'],
  storageFull: [413, 'overLimit'],
  keyUnavailable: [400, 'badRequest'],
  regionUnavailable: [503, 'serviceUnavailable'],
};

// Fastify's own errors for requests that never reached a handler.
const FASTIFY_CODES: Record<string, [number, string, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'badRequest', 'the request body is not valid JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'badRequest', 'the request body is empty; send a JSON object'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'overLimit', 'the request body is too large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [400, 'badRequest', 'send the body as Content-Type: application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'badRequest', 'Content-Length does not match the body'],
};

export function faultBody(name: string, code: number, message: string): Record<string, { code: number; message: string }> {
  return { [name]: { code, message } };
}

export function sendFault(reply: FastifyReply, name: string, code: number, message: string): FastifyReply {
  return reply
    .code(code)
    .type('application/json')
    .send(faultBody(name, code, message));
}

export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof TernError) {
    const [code, name] = FAULTS[error.kind] ?? [500, 'instanceFault'];
    if (code >= 500) request.log.warn({ err: error }, 'request failed');
    return sendFault(reply, name, code, error.message);
  }
  if (error.validation) {
    return sendFault(reply, 'badRequest', 400, validationMessage(error));
  }
  const known = error.code ? FASTIFY_CODES[error.code] : undefined;
  if (known) return sendFault(reply, known[1], known[0], known[2]);
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return sendFault(reply, 'badRequest', 400, error.message);
  }
  request.log.error({ err: error }, 'unexpected error');
  return sendFault(reply, 'instanceFault', 500, 'internal error; the operator can find details in the service log');
}

function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  if (!first) return error.message;
  const where = `${error.validationContext ?? 'request'}${first.instancePath ? first.instancePath.replaceAll('/', '.') : ''}`;
  const params = first.params as Record<string, unknown>;
  if (first.keyword === 'required') return `${where}: "${params.missingProperty}" is required`;
  if (first.keyword === 'additionalProperties') return `${where}: unknown field "${params.additionalProperty}"`;
  return `${where} ${first.message}`;
}
