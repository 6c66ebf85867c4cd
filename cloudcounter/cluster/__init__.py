"""What several hub nodes and media workers share: Redis connections and member leases."""
