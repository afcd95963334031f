package history

// Migrate lets the external tests apply the migrations on their own.
var Migrate = applyMigrations
