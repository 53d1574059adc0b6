"""Speed and memory measurements that print a table and, last, one JSON line."""
