"""Outside-style torch Adam ports with amsgrad whose maximum the harness cannot reach."""
