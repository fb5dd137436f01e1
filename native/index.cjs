// Loads the compiled addon; throws (MODULE_NOT_FOUND or a dlopen error) when it was not built.
'use strict';
module.exports = require('./build/Release/blas.node');
