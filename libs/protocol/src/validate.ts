import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { ValueError } from '@sinclair/typebox/errors';
import { PushError, type ErrorCode } from './errors.js';
import { idProblem, type IdKind } from './ids.js';

/**
 * Annotations our schemas carry beside JSON Schema's keywords, read only on the error path:
 * - `code`: the error code a value failing this (sub)schema answers (`bad_request` otherwise);
 * - `idKind`: the field is an id of this kind; `idProblem` explains what is wrong with it and
 *   refines what JSON Schema cannot say (length in UTF-8 bytes, control characters, well-formed
 *   UTF-16);
 * - `problem`: a fixed message for any failure of this (sub)schema.
 */
export interface Annotations {
  code?: ErrorCode;
  idKind?: IdKind;
  problem?: string;
}

/**
 * A compiled schema: `check` is the fast path (a generated function, no allocation), `problem`
 * explains the first failure as a PushError, in the order of `order` (top-level property names)
 * when given, else in the schema's own order.
 */
export interface Validator<T extends TSchema> {
  readonly schema: T;
  check(value: unknown): value is Static<T>;
  /** The PushError for a value the schema or the id rules refuse (undefined when it passes). */
  problem(value: unknown): PushError | undefined;
  /** `value` typed, or throws the PushError `problem` gives. `check` alone skips the id rules. */
  parse(value: unknown): Static<T>;
}

/** `/messages/0/user` -> `messages[0].user`: the path as a reader of the docs would write it. */
function fieldPath(path: string): string {
  let out = '';
  for (const part of path.split('/').slice(1)) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(key) ? `[${key}]` : out === '' ? key : `.${key}`;
  }
  return out;
}

/** The PushError a failed check of one schema answers. */
export function errorOf(e: ValueError, fallback: ErrorCode = 'bad_request'): PushError {
  const a = e.schema as TSchema & Annotations;
  const code = a.code ?? fallback;
  const field = fieldPath(e.path);
  if (a.problem !== undefined) return new PushError(code, a.problem);
  if (a.idKind !== undefined) {
    const why = idProblem(a.idKind, e.value) ?? e.message;
    return new PushError(code, field === '' ? why : `${field}: ${why}`);
  }
  return new PushError(code, field === '' ? e.message : `${field}: ${e.message.toLowerCase()}`);
}

/**
 * What JSON Schema cannot say about ids (UTF-8 byte length, control characters, well-formed
 * UTF-16): `idProblem` on every field annotated with `idKind`, walking objects and arrays of a
 * value that already passed the schema. Undefined when every id is fine.
 */
function refineIds(schema: TSchema, value: unknown, path: string): PushError | undefined {
  const a = schema as TSchema & Annotations & { properties?: Record<string, TSchema>; items?: TSchema };
  if (a.idKind !== undefined) {
    const why = idProblem(a.idKind, value);
    return why === undefined ? undefined : new PushError(a.code ?? 'invalid_id', path === '' ? why : `${path}: ${why}`);
  }
  if (a.properties !== undefined && typeof value === 'object' && value !== null) {
    for (const [key, sub] of Object.entries(a.properties)) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined) continue;
      const bad = refineIds(sub, v, path === '' ? key : `${path}.${key}`);
      if (bad !== undefined) return bad;
    }
  }
  if (a.items !== undefined && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = refineIds(a.items, value[i], `${path}[${i}]`);
      if (bad !== undefined) return bad;
    }
  }
  return undefined;
}

/** Whether any field of the schema (at any depth) is an id that `refineIds` must look at. */
function hasIds(schema: TSchema): boolean {
  const a = schema as TSchema & Annotations & { properties?: Record<string, TSchema>; items?: TSchema };
  if (a.idKind !== undefined) return true;
  if (a.properties !== undefined && Object.values(a.properties).some(hasIds)) return true;
  return a.items !== undefined && hasIds(a.items);
}

/**
 * Compiles a schema once (TypeBox's TypeCompiler: a generated checker, measured in
 * bench/frames.ts). Call at module or service construction, never per request.
 */
export function compile<T extends TSchema>(schema: T, opts: { order?: readonly string[] } = {}): Validator<T> {
  const checker: TypeCheck<T> = TypeCompiler.Compile(schema);
  // Decided once: a schema without ids (an ack frame) pays nothing for the walk.
  const refine = hasIds(schema) ? (value: unknown) => refineIds(schema, value, '') : () => undefined;
  const rank = (e: ValueError): number => {
    const top = e.path.split('/')[1] ?? '';
    const i = opts.order?.indexOf(top) ?? -1;
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  const firstError = (value: unknown): ValueError | undefined => {
    if (opts.order === undefined) return checker.Errors(value).First();
    let best: ValueError | undefined;
    for (const e of checker.Errors(value)) if (best === undefined || rank(e) < rank(best)) best = e;
    return best;
  };
  const v: Validator<T> = {
    schema,
    check: (value): value is Static<T> => checker.Check(value),
    problem(value) {
      if (checker.Check(value)) return refine(value);
      const e = firstError(value);
      return e === undefined ? new PushError('bad_request') : errorOf(e);
    },
    parse(value) {
      const bad = v.problem(value);
      if (bad !== undefined) throw bad;
      return value;
    },
  };
  return v;
}

/**
 * An integer written in decimal digits (a query parameter, a path segment, a CLI flag), NaN for
 * anything else: `Number()` alone reads '' and ' ' as 0, and takes '1e3', '0x10' and '+5'.
 */
export function decimal(raw: string | null | undefined): number {
  return typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
}
