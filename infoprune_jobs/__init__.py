"""InfoPrune job domain, shared by the API and the worker: settings, ORM models, the job state
machine, tenant-scoped repositories, DB leases, artifact storage and the service CLI commands.

Import the modules themselves (``infoprune_jobs.settings``, ...): the package imports nothing, so the
``infoprune`` command can load the service commands' parsers where only the client is installed."""
