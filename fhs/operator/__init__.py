"""Operator domain: trusted issuers, FedAdmin grants, status."""
