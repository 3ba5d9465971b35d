package lan

// MaxChecks is maxChecks, for the tests of package lan_test.
const MaxChecks = maxChecks
