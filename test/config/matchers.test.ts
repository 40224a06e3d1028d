import { describe, expect, it } from 'vitest';
import { compileRe2, decodeStringMatcher } from '../../proxy/config/envoy/matchers';
import { Issues, Reader } from '../../common/reader';

function re(pattern: string, anchor = true) {
  const issues = new Issues();
  const regex = compileRe2(pattern, 'regex', issues, anchor);
  return { regex, errors: issues.errors };
}

describe('compileRe2 (Envoy RE2 semantics on JS RegExp)', () => {
  it('anchors for a full match unless asked not to', () => {
    expect(re('abc').regex!.test('xabcx')).toBe(false);
    expect(re('abc').regex!.test('abc')).toBe(true);
    expect(re('abc', false).regex!.test('xabcx')).toBe(true);
    // Alternation stays inside the anchors.
    expect(re('a|b').regex!.test('ab')).toBe(false);
  });

  it('translates named groups, leading flags and \\A / \\z', () => {
    expect(re('(?P<v>[0-9]+)').regex!.exec('42')?.groups?.v).toBe('42');
    expect(re('(?i)abc').regex!.test('ABC')).toBe(true);
    expect(re('(?s)a.b').regex!.test('a\nb')).toBe(true);
    expect(re('a.b').regex!.test('a\nb')).toBe(false);
    expect(re('\\Aab\\z', false).regex!.test('ab')).toBe(true);
    expect(re('\\Aab\\z', false).regex!.test('xab')).toBe(false);
    expect(re('\\p{Greek}+').regex!.test('αβγ')).toBe(true);
    expect(re('\\P{Greek}+').regex!.test('abc')).toBe(true);
    expect(re('\\pL+\\p{Nd}').regex!.test('abc1')).toBe(true);
    expect(re('\\p{^Lu}').regex!.test('a')).toBe(true);
  });

  it('keeps escapes and character classes intact', () => {
    expect(re('[]a]+').regex!.test(']a]')).toBe(true);
    expect(re('[^]a]').regex!.test('b')).toBe(true);
    expect(re('[(?=]+').regex!.test('(?=')).toBe(true);
    expect(re('\\(\\?=').regex!.test('(?=')).toBe(true);
    expect(re('[\\1]').errors).toEqual([]);
  });

  it.each([
    ['(?=a)', 'lookaround assertions are not supported'],
    ['(?!a)b', 'lookaround assertions are not supported'],
    ['(?<=a)b', 'lookaround assertions are not supported'],
    ['(?<!a)b', 'lookaround assertions are not supported'],
    ['(a)\\1', 'backreferences are not supported'],
    ['(?<n>a)\\k<n>', 'backreferences are not supported'],
    ['a(?i)b', 'inline flags are only supported at the start'],
    ['abc\\', 'trailing backslash'],
  ])('rejects %s', (pattern, why) => {
    const { regex, errors } = re(pattern);
    expect(regex).toBeUndefined();
    expect(errors).toEqual([
      { path: 'regex', message: `invalid regex ${JSON.stringify(pattern)}: ${why} (Envoy uses RE2)` },
    ]);
  });

  it('rejects an unsupported leading flag and JS syntax errors', () => {
    expect(re('(?U)a+').errors).toEqual([
      { path: 'regex', message: 'invalid regex "(?U)a+": flag (?U) is not supported' },
    ]);
    expect(re('a{2,1}').errors).toEqual([
      {
        path: 'regex',
        message:
          'invalid regex "a{2,1}": Invalid regular expression: /^(?:a{2,1})$/: numbers out of order in {} quantifier',
      },
    ]);
  });
});

describe('StringMatcher', () => {
  function sm(raw: Record<string, unknown>) {
    const issues = new Issues();
    const m = decodeStringMatcher(new Reader(raw, 'm', issues));
    return { m, errors: issues.errors, warnings: issues.warnings };
  }
  it('decodes each kind; exact may be empty', () => {
    expect(sm({ exact: '' }).m).toEqual({ kind: 'exact', value: '', ignoreCase: false });
    expect(sm({ contains: 'x', ignore_case: true }).m).toEqual({ kind: 'contains', value: 'x', ignoreCase: true });
    const r = sm({ safe_regex: { google_re2: {}, regex: 'a.c' }, ignore_case: true });
    expect(r.m).toMatchObject({ kind: 'safe_regex', value: 'a.c', ignoreCase: false });
    expect(r.warnings).toEqual([{ path: 'm.ignore_case', message: 'has no effect with safe_regex (as in Envoy)' }]);
  });
  it('reports errors', () => {
    expect(sm({}).errors).toEqual([
      { path: 'm', message: 'one of exact, prefix, suffix, contains, safe_regex must be set' },
    ]);
    expect(sm({ suffix: '' }).errors).toEqual([{ path: 'm.suffix', message: 'must not be empty' }]);
    expect(sm({ exact: 'a', prefix: 'b' }).errors).toEqual([
      {
        path: 'm.prefix',
        message: 'only one of exact, prefix, suffix, contains, safe_regex, custom may be set (also found exact)',
      },
    ]);
    expect(sm({ custom: { name: 'x' } }).errors).toEqual([
      { path: 'm.custom', message: 'custom string matchers are not supported by meshlet' },
    ]);
  });
});
