// Validates the portal's catalog with Backstage's own packages: every entity of catalog/, of
// services/*/catalog-info.yaml, the templates' template.yaml, and the template's
// catalog-info.yaml rendered for a sample service, through the catalog's entity policies and
// its kind validators (the scaffolder's for Templates). Run by scripts/validate-catalog.sh.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import {
  EntityPolicies,
  DefaultNamespaceEntityPolicy,
  FieldFormatEntityPolicy,
  NoForeignRootFieldsEntityPolicy,
  SchemaValidEntityPolicy,
  apiEntityV1alpha1Validator,
  componentEntityV1alpha1Validator,
  domainEntityV1alpha1Validator,
  groupEntityV1alpha1Validator,
  locationEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator,
} from '@backstage/catalog-model';
import { templateEntityV1beta3Validator } from '@backstage/plugin-scaffolder-common';

const project = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const policy = EntityPolicies.allOf([
  new SchemaValidEntityPolicy(),
  new DefaultNamespaceEntityPolicy(),
  new NoForeignRootFieldsEntityPolicy(),
  new FieldFormatEntityPolicy(),
]);
const validators = [
  apiEntityV1alpha1Validator,
  componentEntityV1alpha1Validator,
  domainEntityV1alpha1Validator,
  groupEntityV1alpha1Validator,
  locationEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator,
  templateEntityV1beta3Validator,
];

function entities(path, text = readFileSync(path, 'utf8')) {
  return parseAllDocuments(text).map((document) => {
    assert.equal(document.errors.length, 0, `${path}: ${document.errors}`);
    return document.toJS();
  });
}

// The catalog's placeholder processor, as Backstage runs it before validating: `$text`,
// `$json` and `$yaml` are read from a file relative to the entity's own file (which must exist).
function resolved(path, value, locate = (target) => target) {
  if (Array.isArray(value)) return value.map((item) => resolved(path, item, locate));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && ['$text', '$json', '$yaml'].includes(keys[0])) {
    const target = locate(join(dirname(path), value[keys[0]]));
    assert.ok(existsSync(target), `${path}: ${keys[0]} ${target} exists`);
    const text = readFileSync(target, 'utf8');
    if (keys[0] === '$json') return JSON.parse(text);
    if (keys[0] === '$yaml') return parseAllDocuments(text)[0].toJS();
    return text;
  }
  return Object.fromEntries(keys.map((key) => [key, resolved(path, value[key], locate)]));
}

async function validate(path, raw, locate) {
  const entity = resolved(path, raw, locate);
  const enforced = await policy.enforce(entity);
  assert.ok(enforced, `${path}: ${entity.kind} ${entity.metadata?.name} passes the policies`);
  let matched = 0;
  for (const validator of validators) {
    if (await validator.check(entity)) matched += 1;
  }
  assert.equal(matched, 1, `${path}: ${entity.kind} ${entity.metadata?.name} is a known kind, valid`);
}

// Each language's template (templates/service/common is the layer they share).
function languages() {
  return readdirSync(join(project, 'templates', 'service')).filter((dir) => dir !== 'common');
}

function files() {
  const found = readdirSync(join(project, 'catalog'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(project, 'catalog', f));
  for (const language of languages()) {
    found.push(join(project, 'templates', 'service', language, 'template.yaml'));
  }
  for (const service of readdirSync(join(project, 'services'))) {
    const entry = join(project, 'services', service, 'catalog-info.yaml');
    if (existsSync(entry)) found.push(entry);
  }
  return found;
}

test('every entity of the catalog is valid for Backstage', async () => {
  const all = files();
  assert.ok(all.length >= 5, `catalog files: ${all}`);
  let count = 0;
  for (const path of all) {
    for (const entity of entities(path)) {
      await validate(path, entity);
      count += 1;
    }
  }
  assert.ok(count >= 15, `${count} entities`);
});

test("a service scaffolded from each template has a valid catalog entry", async () => {
  const values = {
    name: 'loyalty', crate: 'loyalty', title: 'Loyalty', owner: 'payments-team',
    description: 'Loyalty points.', port: '28401', template_version: '1',
  };
  for (const language of languages()) {
    values.language = language;
    const path = join(project, 'templates', 'service', 'common', 'files', 'services',
      '${{ values.name }}', 'catalog-info.yaml');
    const text = readFileSync(path, 'utf8')
      .replace(/\$\{\{ values\.([a-z_]+) \}\}/g, (_, name) => {
        assert.ok(name in values, `${path}: values.${name}`);
        return values[name];
      });
    const rendered = entities(path, text);
    assert.ok(rendered.length >= 2, 'a Component and its API');
    // A rendered `$text` names the rendered file: it is the template's, under its own name.
    const locate = (target) => target.replaceAll(values.name, '${{ values.name }}');
    for (const entity of rendered) await validate(path, entity, locate);
  }
});
