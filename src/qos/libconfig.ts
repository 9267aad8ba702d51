/**
 * A parser for the subset of libconfig that ReFlex `.devmodel` files use.
 *
 * Grammar (libconfig's, minus @include and typed arrays' type checks):
 *   file      := setting*
 *   setting   := NAME ('=' | ':') value (';' | ',')?
 *   value     := scalar | group | list | array
 *   group     := '{' setting* '}'            -> plain object
 *   list      := '(' (value (',' value)*)? ')' -> array
 *   array     := '[' (scalar (',' scalar)*)? ']' -> array
 *   scalar    := integer (dec, 0x hex, optional L/LL suffix) | float | true | false | string+
 * Adjacent strings concatenate. Comments: `#`, `//` to end of line, `/* *\/`.
 *
 * Pure: text in, values out. Errors carry the source name and line:column of
 * the offending token, because a calibration file is edited by hand.
 */

export type ConfigValue = number | boolean | string | ConfigValue[] | ConfigGroup;
export interface ConfigGroup {
  [name: string]: ConfigValue;
}

export class ConfigSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(source: string, line: number, column: number, message: string) {
    super(`${source}:${line}:${column}: ${message}`);
    this.name = 'ConfigSyntaxError';
    this.line = line;
    this.column = column;
  }
}

const NAME_START = /[A-Za-z*]/;
const NAME_CHAR = /[A-Za-z0-9_*-]/;

class Parser {
  private pos = 0;
  private line = 1;
  private col = 1;
  private readonly text: string;
  private readonly source: string;

  constructor(text: string, source: string) {
    this.text = text;
    this.source = source;
  }

  fail(message: string, line = this.line, col = this.col): never {
    throw new ConfigSyntaxError(this.source, line, col, message);
  }

  private peek(offset = 0): string {
    return this.text.charAt(this.pos + offset);
  }

  private advance(): string {
    const c = this.text.charAt(this.pos++);
    if (c === '\n') {
      this.line++;
      this.col = 1;
    } else {
      this.col++;
    }
    return c;
  }

  get atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  /** Skips whitespace and all three comment styles. */
  skipBlank(): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
        this.advance();
      } else if (c === '#' || (c === '/' && this.peek(1) === '/')) {
        while (!this.atEnd && this.peek() !== '\n') this.advance();
      } else if (c === '/' && this.peek(1) === '*') {
        const line = this.line;
        const col = this.col;
        this.advance();
        this.advance();
        while (!(this.peek() === '*' && this.peek(1) === '/')) {
          if (this.atEnd) this.fail('unterminated /* comment', line, col);
          this.advance();
        }
        this.advance();
        this.advance();
      } else {
        return;
      }
    }
  }

  private describeHere(): string {
    if (this.atEnd) return 'end of input';
    return `'${this.peek()}'`;
  }

  parseSettings(terminator: string): ConfigGroup {
    const group: ConfigGroup = Object.create(null) as ConfigGroup;
    for (;;) {
      this.skipBlank();
      if (terminator === '' ? this.atEnd : this.peek() === terminator) return group;
      if (this.atEnd) this.fail(`expected a setting name or '${terminator}', found end of input`);
      const line = this.line;
      const col = this.col;
      const name = this.parseName();
      if (Object.hasOwn(group, name)) this.fail(`duplicate setting '${name}'`, line, col);
      this.skipBlank();
      const sep = this.peek();
      if (sep !== '=' && sep !== ':') this.fail(`expected '=' or ':' after '${name}', found ${this.describeHere()}`);
      this.advance();
      group[name] = this.parseValue();
      this.skipBlank();
      if (this.peek() === ';' || this.peek() === ',') this.advance();
    }
  }

  private parseName(): string {
    if (!NAME_START.test(this.peek())) this.fail(`expected a setting name, found ${this.describeHere()}`);
    let name = '';
    while (!this.atEnd && NAME_CHAR.test(this.peek())) name += this.advance();
    return name;
  }

  parseValue(): ConfigValue {
    this.skipBlank();
    const c = this.peek();
    if (c === '{') {
      this.advance();
      const g = this.parseSettings('}');
      this.advance();
      return g;
    }
    if (c === '(' || c === '[') {
      return this.parseSequence(c === '(' ? ')' : ']', c === '[');
    }
    if (c === '"') return this.parseStrings();
    if (this.atEnd) this.fail('expected a value, found end of input');
    return this.parseScalarWord();
  }

  private parseSequence(close: string, scalarsOnly: boolean): ConfigValue[] {
    const openLine = this.line;
    const openCol = this.col;
    this.advance();
    const items: ConfigValue[] = [];
    this.skipBlank();
    if (this.peek() === close) {
      this.advance();
      return items;
    }
    for (;;) {
      this.skipBlank();
      if (this.atEnd) this.fail(`unterminated '${close === ')' ? '(' : '['}' opened at line ${openLine}:${openCol}`);
      const line = this.line;
      const col = this.col;
      const v = this.parseValue();
      if (scalarsOnly && typeof v === 'object') this.fail('an array [ ] may hold scalars only; use a list ( )', line, col);
      items.push(v);
      this.skipBlank();
      const c = this.peek();
      if (c === ',') {
        this.advance();
        continue;
      }
      if (c === close) {
        this.advance();
        return items;
      }
      if (this.atEnd) this.fail(`unterminated '${close === ')' ? '(' : '['}' opened at line ${openLine}:${openCol}`);
      this.fail(`expected ',' or '${close}', found ${this.describeHere()}`);
    }
  }

  private parseStrings(): string {
    let out = '';
    do {
      const line = this.line;
      const col = this.col;
      this.advance();
      for (;;) {
        if (this.atEnd || this.peek() === '\n') this.fail('unterminated string', line, col);
        const c = this.advance();
        if (c === '"') break;
        if (c !== '\\') {
          out += c;
          continue;
        }
        const e = this.advance();
        if (e === 'n') out += '\n';
        else if (e === 't') out += '\t';
        else if (e === 'r') out += '\r';
        else if (e === 'f') out += '\f';
        else if (e === '\\' || e === '"') out += e;
        else if (e === 'x') {
          const hex = this.advance() + this.advance();
          if (!/^[0-9A-Fa-f]{2}$/.test(hex)) this.fail(`bad escape \\x${hex}`);
          out += String.fromCharCode(parseInt(hex, 16));
        } else this.fail(`unknown escape '\\${e}'`);
      }
      this.skipBlank();
    } while (this.peek() === '"');
    return out;
  }

  private parseScalarWord(): number | boolean {
    const line = this.line;
    const col = this.col;
    let word = '';
    while (!this.atEnd && /[A-Za-z0-9_.+-]/.test(this.peek())) word += this.advance();
    if (word === '') this.fail(`expected a value, found ${this.describeHere()}`);
    const lower = word.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    const intMatch = /^([+-]?)(0[xX][0-9A-Fa-f]+|[0-9]+)(L|LL)?$/.exec(word);
    if (intMatch !== null) {
      const magnitude = Number(intMatch[2]);
      const v = intMatch[1] === '-' ? -magnitude : magnitude;
      if (!Number.isSafeInteger(v)) this.fail(`integer ${word} is out of the exactly representable range`, line, col);
      return v;
    }
    if (/^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?$/.test(word)) return Number(word);
    return this.fail(`'${word}' is not a number, boolean or string`, line, col);
  }
}

/** Parses libconfig text into a group of settings. Throws ConfigSyntaxError. */
export function parseLibconfig(text: string, source = '<config>'): ConfigGroup {
  const p = new Parser(text, source);
  const g = p.parseSettings('');
  p.skipBlank();
  if (!p.atEnd) p.fail('unexpected text after the last setting');
  return g;
}
