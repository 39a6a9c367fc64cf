-- Countries ranked by revenue on the run date; reads the sequence `country_revenue`.
SELECT country, revenue, purchases,
       rank() OVER (ORDER BY revenue DESC) AS revenue_rank
FROM country_revenue
