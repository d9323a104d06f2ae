// Checks of untrusted JSON-like values (the configuration, state files, the admin socket's
// requests) against a declared shape, with the TypeScript type of the result inferred from it.
//
// kuasard's own, small on purpose: a validation package kept resident in a daemon costs memory
// for as long as it runs (zod 4 held about 7 MiB of kuasard's private memory, most of it code and
// messages for features kuasard never used). This one has what kuasard's shapes need: strings,
// numbers, booleans, literals, enums, arrays, records, objects (strict or not), nullable,
// optional, defaults, refinements and transforms. Every problem found is reported with the path
// of the value it concerns; a value is never coerced.

export type Path = readonly (string | number)[];

export interface Issue {
  path: Path;
  message: string;
}

export type ParseResult<T> = { success: true; data: T } | { success: false; issues: Issue[] };

/** Thrown by parse(): every issue found, the first in the message. */
export class SchemaError extends Error {
  constructor(readonly issues: Issue[]) {
    super(describeIssue(issues[0]!));
    this.name = 'SchemaError';
  }
}

/** "a.b.0: message", or the message alone for the value itself. */
export function describeIssue(issue: Issue, whole = '(top level)'): string {
  return `${issue.path.length > 0 ? issue.path.join('.') : whole}: ${issue.message}`;
}

/** The marker a check returns after recording an issue: the value has no valid output. */
const INVALID: unique symbol = Symbol('invalid');
type Checked<T> = T | typeof INVALID;
type Check<T> = (value: unknown, path: Path, issues: Issue[]) => Checked<T>;

/** The type a schema produces. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

export class Schema<T> {
  constructor(protected readonly check: Check<T>) {}

  parse(value: unknown): T {
    const result = this.safeParse(value);
    if (!result.success) throw new SchemaError(result.issues);
    return result.data;
  }

  safeParse(value: unknown): ParseResult<T> {
    const issues: Issue[] = [];
    const data = this.check(value, [], issues);
    return data === INVALID || issues.length > 0 ? { success: false, issues } : { success: true, data };
  }

  /** Runs this schema's check where another schema checks a part of its value. */
  checkAt(value: unknown, path: Path, issues: Issue[]): Checked<T> {
    return this.check(value, path, issues);
  }

  optional(): Schema<T | undefined> {
    return new Schema<T | undefined>((value, path, issues) => (value === undefined ? undefined : this.check(value, path, issues)));
  }

  nullable(): Schema<T | null> {
    return new Schema<T | null>((value, path, issues) => (value === null ? null : this.check(value, path, issues)));
  }

  /** A missing value (undefined) is taken to be `value`, which is checked like any other. */
  default(value: T): Schema<Exclude<T, undefined>> {
    return new Schema((v, path, issues) => this.check(v === undefined ? value : v, path, issues) as Checked<Exclude<T, undefined>>);
  }

  /** An issue with `message` when `holds` is false for a value that passed this schema. */
  refine(holds: (value: T) => boolean, message: string): Schema<T> {
    return new Schema(refined(this.check, holds, message));
  }

  /** The output mapped by `map`; an Error it throws becomes an issue with its message. */
  transform<U>(map: (value: T) => U): Schema<U> {
    return new Schema((value, path, issues) => {
      const checked = this.check(value, path, issues);
      if (checked === INVALID) return INVALID;
      try {
        return map(checked);
      } catch (err) {
        issues.push({ path, message: (err as Error).message });
        return INVALID;
      }
    });
  }
}

/** `check`, then an issue with `message` when `holds` is false for what it let through. */
function refined<T>(check: Check<T>, holds: (value: T) => boolean, message: string): Check<T> {
  return (value, path, issues) => {
    const checked = check(value, path, issues);
    if (checked === INVALID || holds(checked)) return checked;
    issues.push({ path, message });
    return INVALID;
  };
}

/** What a value is, for messages: "a string", "null", "an array". */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value === undefined) return 'nothing';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** A check that the value is of one JavaScript type, then more checks on it. */
function typed<T>(expected: string, is: (value: unknown) => value is T): Check<T> {
  return (value, path, issues) => {
    if (is(value)) return value;
    issues.push({ path, message: `expected ${expected}, got ${kindOf(value)}` });
    return INVALID;
  };
}

export class StringSchema extends Schema<string> {
  regex(pattern: RegExp, message = `must match ${pattern}`): StringSchema {
    return new StringSchema(refined(this.check, (s) => pattern.test(s), message));
  }

  min(length: number, message = `must be at least ${length} character${length === 1 ? '' : 's'} long`): StringSchema {
    return new StringSchema(refined(this.check, (s) => s.length >= length, message));
  }
}

export class NumberSchema extends Schema<number> {
  int(): NumberSchema {
    return new NumberSchema(refined(this.check, Number.isInteger, 'must be an integer'));
  }

  min(least: number): NumberSchema {
    return new NumberSchema(refined(this.check, (n) => n >= least, `must be at least ${least}`));
  }

  max(most: number): NumberSchema {
    return new NumberSchema(refined(this.check, (n) => n <= most, `must be at most ${most}`));
  }

  nonnegative(): NumberSchema {
    return this.min(0);
  }
}

export class ArraySchema<T> extends Schema<T[]> {
  min(length: number, message = `must have at least ${length} item${length === 1 ? '' : 's'}`): ArraySchema<T> {
    return new ArraySchema(refined(this.check, (a) => a.length >= length, message));
  }
}

export type Shape = Record<string, Schema<unknown>>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** An object's type: a key whose schema accepts undefined is optional. */
export type ObjectOf<S extends Shape> = Simplify<
  { [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]> } & {
    [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
  }
>;

const plainObject = typed(
  'an object',
  (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value),
);
const anArray = typed('an array', (value: unknown): value is unknown[] => Array.isArray(value));

export class ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  /**
   * @param strict whether a key the shape lacks is an issue (a configuration: a misspelt key must
   *   not be ignored) or left out of the output (a state file written by a newer version).
   */
  constructor(
    readonly shape: S,
    private readonly strict: boolean,
  ) {
    super((input, path, issues) => {
      const value = plainObject(input, path, issues);
      if (value === INVALID) return INVALID;
      const out: Record<string, unknown> = {};
      let valid = true;
      for (const [key, schema] of Object.entries(shape)) {
        const checked = schema.checkAt(value[key], [...path, key], issues);
        if (checked === INVALID) valid = false;
        else if (checked !== undefined) out[key] = checked;
      }
      if (strict) {
        for (const key of Object.keys(value)) {
          if (Object.hasOwn(shape, key)) continue;
          issues.push({ path, message: `unknown key ${JSON.stringify(key)}` });
          valid = false;
        }
      }
      return valid ? (out as ObjectOf<S>) : INVALID;
    });
  }

  /** The same object with more keys (or keys checked differently). */
  extend<More extends Shape>(more: More): ObjectSchema<Omit<S, keyof More> & More> {
    return new ObjectSchema({ ...this.shape, ...more } as Omit<S, keyof More> & More, this.strict);
  }

  /** A missing object is taken to be an empty one: every key takes its default. */
  orDefaults(): Schema<ObjectOf<S>> {
    return new Schema((value, path, issues) => this.checkAt(value === undefined ? {} : value, path, issues));
  }
}

// ---- constructors ------------------------------------------------------------------------------

export const string = (): StringSchema => new StringSchema(typed('a string', (v): v is string => typeof v === 'string'));

/** A finite number (JSON and TOML have no others; NaN and infinities are refused). */
export const number = (): NumberSchema =>
  new NumberSchema(typed('a number', (v): v is number => typeof v === 'number' && Number.isFinite(v)));

export const boolean = (): Schema<boolean> => new Schema(typed('a boolean', (v): v is boolean => typeof v === 'boolean'));

/** Any value, as it is (a kind checks its own part of a record). */
export const unknown = (): Schema<unknown> => new Schema((value) => value);

export function literal<const L extends string | number | boolean>(expected: L): Schema<L> {
  return new Schema((value, path, issues) => {
    if (value === expected) return expected;
    issues.push({ path, message: `expected ${JSON.stringify(expected)}, got ${JSON.stringify(value) ?? 'nothing'}` });
    return INVALID;
  });
}

export function oneOf<const V extends string>(values: readonly V[]): Schema<V> {
  return new Schema((value, path, issues) => {
    if ((values as readonly unknown[]).includes(value)) return value as V;
    issues.push({ path, message: `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` });
    return INVALID;
  });
}

/** The first schema that accepts the value; when none does, one issue naming what was expected. */
export function union<S extends Schema<unknown>[]>(schemas: S, expected: string): Schema<Infer<S[number]>> {
  return new Schema((value, path, issues) => {
    for (const schema of schemas) {
      const attempt: Issue[] = [];
      const checked = schema.checkAt(value, path, attempt);
      if (checked !== INVALID && attempt.length === 0) return checked as Infer<S[number]>;
    }
    issues.push({ path, message: `expected ${expected}` });
    return INVALID;
  });
}

export function array<T>(item: Schema<T>): ArraySchema<T> {
  return new ArraySchema((input, path, issues) => {
    const value = anArray(input, path, issues);
    if (value === INVALID) return INVALID;
    const out: T[] = [];
    let valid = true;
    value.forEach((element, index) => {
      const checked = item.checkAt(element, [...path, index], issues);
      if (checked === INVALID) valid = false;
      else out.push(checked);
    });
    return valid ? out : INVALID;
  });
}

/** An object used as a map: any keys, every value checked by `value`. */
export function record<T>(value: Schema<T>): Schema<Record<string, T>> {
  return new Schema((input, path, issues) => {
    const map = plainObject(input, path, issues);
    if (map === INVALID) return INVALID;
    const out: Record<string, T> = {};
    let valid = true;
    for (const [key, element] of Object.entries(map)) {
      const checked = value.checkAt(element, [...path, key], issues);
      if (checked === INVALID) valid = false;
      else out[key] = checked;
    }
    return valid ? out : INVALID;
  });
}

/** An object with the keys of `shape`; keys it lacks are left out of the output. */
export const object = <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape, false);

/** An object with the keys of `shape` and no others: an unknown key is an issue. */
export const strictObject = <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape, true);

const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** A UTC time as Date.toISOString() writes it (fractions of a second optional). */
export const isoDatetime = (): StringSchema => string().regex(ISO_DATETIME, 'must be a UTC time such as 2025-01-01T00:00:00.000Z');
