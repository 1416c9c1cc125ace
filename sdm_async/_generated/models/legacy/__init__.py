# DO NOT EDIT: written by `make generate`.
