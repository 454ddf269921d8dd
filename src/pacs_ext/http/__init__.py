"""Request plumbing every route uses: dependencies, path parameters, middleware (body
limit, security headers, error responses, request logging), /docs and /viewer."""
