"""AIOS memory server: typed, versioned memories in a graph, on SQLite or Neo4j."""
