// ESLint flat config for `npm run lint` (which names the folders it lints: src, test, bench,
// scripts, data-scripts). typescript-eslint's recommended rules without type information, so a
// lint of the whole repository takes seconds, plus import cycles as errors.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['node_modules/', 'test/fixtures/', 'native/', 'checkpoints/', 'data/', 'experiments/'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    settings: {
      // import-x follows only files with these extensions, read with this parser; without them it
      // skips every .ts file and no-cycle silently finds nothing.
      'import-x/extensions': ['.ts'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Resolves the `.ts` paths the sources import (tsconfig's allowImportingTsExtensions).
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      // A cycle of any length is an error (no maxDepth). Type-only imports are not followed: they
      // vanish at run time. Dynamic `import()` is followed: it is a cycle all the same.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // The codebase's convention for a deliberately unused binding (an overridden method's
      // parameter, a key dropped by rest destructuring, `for (const _ of …)`) is a leading `_`.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
);
