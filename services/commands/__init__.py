"""Operator commands (CONTRACT.md §2 "Operator commands", §4 "Carriers without integration").

PackageCancelled, ShipmentInfoUpdated and ShipmentStatusSet are consumed by the shipper
(it holds the carrier clients a cancellation or a carrier change needs):

- ``handlers.py``: the three handlers and the contract's state tables;
- ``waiting.py``: a command that arrives before its PackagePacked waits, and is applied once
  the package is packed;
- ``manual.py``: carriers without integration (``integration = "none"``): never registered,
  never polled, shipped by their PackageShipped with the hand-given tracking information;
- ``carrier_calls.py``: deletions at a carrier (404 counts as done; best effort where the
  contract says so).
"""
