/** Reading the shipped .ebextensions file as Elastic Beanstalk reads its option_settings, for the deploy tests. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

/** option_settings by namespace: {namespace: {option: value}}. */
export type OptionSettings = Record<string, Record<string, string>>;

/**
 * The option_settings of an .ebextensions file in its `namespace: {option: value}` form (the only form it
 * uses): enough YAML for this file, and it refuses anything else rather than misread it.
 */
export function optionSettings(path: string): OptionSettings {
  const out: OptionSettings = {};
  let namespace: string | undefined;
  let inSettings = false;
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').replace(/^\s*#.*$/, '');
    if (line.trim() === '') continue;
    if (line === 'option_settings:') { inSettings = true; continue; }
    assert.ok(inSettings, `${path}: only option_settings is expected, got ${JSON.stringify(raw)}`);
    const match = /^( *)(\S.*?):(?: +(.*))?$/.exec(line); // keys hold colons (aws:...:...), a value follows ": "
    assert.ok(match, `${path}: cannot read ${JSON.stringify(raw)}`);
    const [, indent, key, value = ''] = match;
    if (indent!.length === 2 && value === '') { namespace = key!; out[namespace] = {}; continue; }
    assert.ok(indent!.length === 4 && namespace, `${path}: unexpected nesting in ${JSON.stringify(raw)}`);
    out[namespace][key!] = value.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
  return out;
}

/** The environment properties the file sets (aws:elasticbeanstalk:application:environment). */
export function environmentProperties(path: string): Record<string, string> {
  return optionSettings(path)['aws:elasticbeanstalk:application:environment'] ?? {};
}
