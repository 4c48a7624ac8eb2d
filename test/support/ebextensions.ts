/** Reading the shipped .ebextensions file as Elastic Beanstalk reads it (option_settings and Resources), for the deploy tests. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

/** option_settings by namespace: {namespace: {option: value}}. */
export type OptionSettings = Record<string, Record<string, string>>;

/** A value in the YAML the file uses: a scalar (its text, unquoted), a flow list of scalars, or a map. */
export type Node = string | string[] | { [key: string]: Node };

/** A CloudFormation resource of the file's Resources section. */
export interface Resource { Type: string; Properties: Record<string, Node> }

/** The sections an .ebextensions file may hold that the bundle uses; any other one is refused, not ignored. */
const SECTIONS = ['option_settings', 'Resources'];

/**
 * The top-level sections of an .ebextensions file, read as block YAML: `key:` opens a map indented below it,
 * `key: value` sets a scalar (quotes taken off) or a flow list (`[a, b]`). Enough YAML for this file, and it
 * refuses anything else (block lists, anchors, multi-line scalars, flow maps, ragged indents) rather than
 * misread it.
 */
export function readConfigFile(path: string): Record<string, Node> {
  const root: Record<string, Node> = {};
  // The maps open at each depth, with the indent of the key that opened them and of their own keys.
  const open: Array<{ indent: number; childIndent?: number; map: Record<string, Node> }> = [{ indent: -1, map: root }];
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').replace(/^\s*#.*$/, '');
    if (line.trim() === '') continue;
    const match = /^( *)(\S.*?):(?: +(.*))?$/.exec(line); // keys hold colons (aws:...:..., Fn::GetAtt), a value follows ": "
    assert.ok(match && !match[2]!.startsWith('- '), `${path}: cannot read ${JSON.stringify(raw)}`);
    const [, spaces, key, value = ''] = match;
    const indent = spaces!.length;
    while (open.at(-1)!.indent >= indent) open.pop();
    const parent = open.at(-1)!;
    parent.childIndent ??= indent;
    assert.equal(indent, parent.childIndent, `${path}: unexpected nesting in ${JSON.stringify(raw)}`);
    assert.ok(!(key! in parent.map), `${path}: ${key} is set twice`);
    if (value === '') {
      const map: Record<string, Node> = {};
      parent.map[key!] = map;
      open.push({ indent, map });
    } else {
      parent.map[key!] = scalarOrList(path, value);
    }
  }
  for (const section of Object.keys(root)) assert.ok(SECTIONS.includes(section), `${path}: only ${SECTIONS.join(' and ')} are expected, got ${section}`);
  return root;
}

function scalarOrList(path: string, value: string): string | string[] {
  const list = /^\[(.*)\]$/.exec(value);
  if (list) return list[1]!.split(',').map((item) => scalar(path, item.trim()));
  return scalar(path, value);
}

function scalar(path: string, value: string): string {
  const quoted = /^'(.*)'$/.exec(value) ?? /^"(.*)"$/.exec(value);
  if (quoted) return quoted[1]!;
  assert.ok(!/^[[{|>&*!-]/.test(value), `${path}: cannot read the value ${JSON.stringify(value)}`);
  return value;
}

/** The option_settings of an .ebextensions file in its `namespace: {option: value}` form (the only form it uses). */
export function optionSettings(path: string): OptionSettings {
  const settings = readConfigFile(path).option_settings ?? {};
  assert.ok(typeof settings === 'object' && !Array.isArray(settings), `${path}: option_settings is a map of namespaces`);
  for (const [namespace, options] of Object.entries(settings)) {
    assert.ok(typeof options === 'object' && !Array.isArray(options), `${path}: ${namespace} is a map of options`);
    for (const [option, value] of Object.entries(options)) assert.equal(typeof value, 'string', `${path}: ${namespace} ${option} is one value`);
  }
  return settings as OptionSettings;
}

/** The environment properties the file sets (aws:elasticbeanstalk:application:environment). */
export function environmentProperties(path: string): Record<string, string> {
  return optionSettings(path)['aws:elasticbeanstalk:application:environment'] ?? {};
}

/** The CloudFormation resources the file adds to the environment's stack, by logical name. */
export function resources(path: string): Record<string, Resource> {
  const section = readConfigFile(path).Resources ?? {};
  assert.ok(typeof section === 'object' && !Array.isArray(section), `${path}: Resources is a map of resources`);
  for (const [name, resource] of Object.entries(section)) {
    assert.ok(typeof resource === 'object' && !Array.isArray(resource) && typeof resource.Type === 'string'
      && typeof resource.Properties === 'object' && !Array.isArray(resource.Properties), `${path}: ${name} has a Type and Properties`);
  }
  return section as unknown as Record<string, Resource>;
}
