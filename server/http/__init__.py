"""HTTP: the REST API under `/api` (`rest.routes`) and the editor's pages (`pages.routes`)."""
