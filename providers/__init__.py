"""Clients for the services Quarterdeck reads and changes, shared by collectors and actions.

Imports nothing of ours but `store`, and no web framework.
"""
