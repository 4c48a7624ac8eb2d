build: node scripts/verify-bundle.mjs
