"""Admission: what a socket must do before the server trusts it, and the caps and quotas that
answer "try again later" instead of letting one client starve the others."""
