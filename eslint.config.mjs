// The TypeScript linter `.ci/run` runs (`npm run lint`): typescript-eslint's recommended rules
// with type information, and the project's own: no `any` (JSON from registries and disk is
// validated where it enters, then typed), and no promise left floating (an unhandled rejection
// would end a command without its Docker-style error and exit status).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'native/**', 'node_modules/**', 'target/**', 'ts/native/binding.d.ts'] },
  {
    files: ['ts/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);
